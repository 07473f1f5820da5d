"""Run the cluster service: `python -m services.cluster`."""

import os

# Set before numpy loads: re-homing multiplies small matrices (a neighbourhood's members by its
# clusters), where OpenBLAS's threads cost more than they give and take cores from the other services.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.cluster.app import create_app
from services.cluster.settings import ClusterSettings
from shared.service import serve
from shared.settings import load_or_exit

settings = load_or_exit(ClusterSettings)
serve(create_app(settings), "cluster", settings, settings.port)
