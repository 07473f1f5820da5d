"""The search service's routers, one module per resource; services/search/app.py composes them."""
