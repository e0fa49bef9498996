"""The Cloud Functions entry points of this project: refluxo's, serving the App that
REFLUXO_APP names (shop:app, set by deploy/main.tf). Locally, with no cloud settings:
REFLUXO_APP=shop:app functions-framework --target api --source main.py"""

from refluxo.host.functions import api, on_message, step

__all__ = ["api", "on_message", "step"]
