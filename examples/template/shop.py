from pathlib import Path

from refluxo import StepResult
from refluxo.runtime import App

app = App()


@app.node(handles=["yes", "no"])
def approval(data, context, payload, globals):
    if not isinstance(payload, dict) or "ok" not in payload:  # not answered yet: ask
        asked = {"question": data["question"], "answer with": {"ok": "true or false"}}
        return StepResult(asked, pause=True)
    return StepResult(payload, next_handle="yes" if payload["ok"] else "no")


@app.node(retry_policy={"maxAttempts": 3, "interval": 1000})
def ship(data, context, payload, globals):
    return StepResult({"shipped": data["order"]})


app.workflow("order", Path(__file__).with_name("order.json"))
