"""A reward server for RL training of editing models: the config's judge behind ``POST /v1/score``.

    python main.py serve --config config.yaml                 # 127.0.0.1:8000, the reward_model section
    editjudge serve --config config.yaml --port 9000 --batch-size 16 --max-wait-ms 20
    EDITJUDGE_SERVER_TOKEN=secret editjudge serve --config config.yaml --host 0.0.0.0   # token required

Endpoints: ``POST /v1/score`` (the JSON schema in ``editjudge.serve.schema``), ``GET /health``
(200 once the judge is loaded, 503 before), ``GET /metrics`` (Prometheus text). Items from
concurrent requests are merged into judge batches (``editjudge.serve.batcher``); the client is
``editjudge.client.RewardClient``. Exit status: 0 stopped, 1 the judge failed to load, 2 invalid
configuration or flags.
"""

from .cli import main
from .settings import ServeSettings

__all__ = ["ServeSettings", "main"]  # the app itself: editjudge.serve.app.build_app (needs the server extra)
