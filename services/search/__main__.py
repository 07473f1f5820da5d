"""Run the search service: `python -m services.search`."""

from services.search.app import create_app
from services.search.settings import SearchSettings
from shared.service import serve
from shared.settings import load_or_exit

settings = load_or_exit(SearchSettings)
serve(create_app(settings), "search", settings, settings.port)
