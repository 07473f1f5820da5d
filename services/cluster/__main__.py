"""Run the cluster service: `python -m services.cluster`."""

from services.cluster.app import create_app
from services.cluster.settings import ClusterSettings
from shared.service import serve
from shared.settings import load

settings = load(ClusterSettings)
serve(create_app(settings), "cluster", settings, settings.port)
