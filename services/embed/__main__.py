"""Run the embed service: `python -m services.embed`."""

from services.embed.app import create_app
from services.embed.settings import EmbedSettings
from shared.service import serve
from shared.settings import load

settings = load(EmbedSettings)
serve(create_app(settings), "embed", settings, settings.port)
