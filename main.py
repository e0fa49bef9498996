"""Cloud Functions entry points of this repository: refluxo's own (``refluxo/host/functions.py``).

``functions-framework --target api --source main.py`` serves the HTTP API and the run
inspector; ``step`` is the endpoint Cloud Tasks calls and ``on_message`` the Pub/Sub
function. A project of its own deploys with the same one-line ``main.py``
(``examples/template/main.py``).
"""

from refluxo.host.functions import APP, SETTINGS, api, deployment, on_message, step

__all__ = ["APP", "SETTINGS", "api", "deployment", "on_message", "step"]
