from pathlib import Path

from refluxo import StepResult
from refluxo.runtime import App

app = App()


@app.node(handles=["yes", "no"])
def approval(data, context, payload, globals):
    if payload is None:  # first visit: pause until a human answers
        return StepResult({"question": data["question"]}, pause=True)
    return StepResult(payload, next_handle="yes" if payload["ok"] else "no")


@app.node(retry_policy={"maxAttempts": 3, "interval": 1000})
def ship(data, context, payload, globals):
    return StepResult({"shipped": data["order"]})


app.workflow("order", Path(__file__).with_name("order.json"))
