"""Run the ingest service: `python -m services.ingest`."""

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.service import serve
from shared.settings import load_or_exit

settings = load_or_exit(IngestSettings)
serve(create_app(settings), "ingest", settings, settings.port)
