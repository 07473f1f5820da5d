"""Run the embed service: `python -m services.embed`."""

from services.embed.app import create_app
from services.embed.settings import EmbedSettings
from shared.service import serve
from shared.settings import load_or_exit

settings = load_or_exit(EmbedSettings)
serve(create_app(settings), "embed", settings, settings.port)
