"""Run the cluster service: `python -m services.cluster`."""

from services.cluster.app import create_app
from services.cluster.settings import ClusterSettings
from shared.service import serve
from shared.settings import load_or_exit

settings = load_or_exit(ClusterSettings)
serve(create_app(settings), "cluster", settings, settings.port)
