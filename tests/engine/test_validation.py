"""Validation of node input and output with pydantic models and JSON Schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from refluxo import (
    NodeDefinition,
    SchemaValidator,
    StepResult,
    ValidationResult,
    Validator,
    WorkflowEngine,
)


class Order(BaseModel):
    quantity: int
    sku: str


class Priced(BaseModel):
    total: float


def run_one(data: Any, definition: NodeDefinition, validator: Validator | None = None) -> Any:
    engine = WorkflowEngine(
        {"nodes": [{"id": "n1", "type": "t", "data": data}]},
        {"t": definition},
        validator=validator or SchemaValidator(),
    )
    return engine.execute(initial_node_id="n1")


async def test_pydantic_input_is_coerced_into_a_model_instance() -> None:
    received: list[Any] = []

    def executor(data: Any, *_: Any) -> StepResult:
        received.append(data)
        return StepResult({"q": data.quantity})

    final = await run_one(
        {"quantity": "3", "sku": "X"}, NodeDefinition(executor, metadata={"input": Order})
    )
    assert final.status == "completed"
    assert received == [Order(quantity=3, sku="X")]


async def test_invalid_input_fails_the_node_naming_it_and_the_path() -> None:
    final = await run_one(
        {"quantity": "many"}, NodeDefinition(lambda *_: StepResult(None), metadata={"input": Order})
    )
    assert final.status == "failed"
    error = final.context["n1"][0].error
    assert "Validation failed" in error
    assert "n1" in error
    assert "quantity" in error
    assert "sku" in error


async def test_json_schema_input() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "age": {"type": "integer", "minimum": 0},
        },
        "required": ["email"],
    }
    ok = await run_one(
        {"email": "a@b.co", "age": 3},
        NodeDefinition(lambda d, *_: StepResult(d), metadata={"input": schema}),
    )
    assert ok.status == "completed"
    bad = await run_one(
        {"age": -1}, NodeDefinition(lambda d, *_: StepResult(d), metadata={"input": schema})
    )
    error = bad.context["n1"][0].error
    assert "Validation failed for node 'n1'" in error
    assert "'email' is a required property" in error
    assert '"path":"age"' in error  # compact, as JSON.stringify writes it


async def test_output_is_validated_after_the_executor() -> None:
    good = await run_one(
        {}, NodeDefinition(lambda *_: StepResult({"total": "9.5"}), metadata={"output": Priced})
    )
    assert good.context["n1"][0].output == {"total": 9.5}
    bad = await run_one(
        {}, NodeDefinition(lambda *_: StepResult({"total": "n/a"}), metadata={"output": Priced})
    )
    assert bad.status == "failed"
    assert "(output)" in bad.context["n1"][0].error


async def test_validation_failure_is_retried_like_any_node_error() -> None:
    definition = NodeDefinition(
        lambda *_: StepResult(None),
        metadata={"input": Order},
        retry_policy={"maxAttempts": 1, "interval": 10},  # type: ignore[arg-type]
    )
    first = await run_one({}, definition)
    assert first.status == "error"


async def test_validator_only_runs_when_the_definition_has_metadata() -> None:
    calls: list[Any] = []

    class Counting(Validator):
        async def validate(self, data: Any, schema: Any) -> ValidationResult:
            calls.append(schema)
            return ValidationResult(valid=True, data={"replaced": True})

    received: list[Any] = []

    def executor(data: Any, *_: Any) -> StepResult:
        received.append(data)
        return StepResult(None)

    await run_one({"a": 1}, NodeDefinition(executor), Counting())
    await run_one({"a": 1}, NodeDefinition(executor, metadata={"label": "x"}), Counting())
    assert calls == [{"label": "x"}]
    assert received == [{"a": 1}, {"replaced": True}]


def test_schema_validator_direct_schema_and_no_schema() -> None:
    validator = SchemaValidator()
    assert validator.validate({"quantity": 1, "sku": "a"}, Order).valid
    assert not validator.validate({}, {"type": "object", "required": ["x"]}).valid
    assert validator.validate("anything", {"label": "no schema here"}).valid
    result = validator.validate([1, "x"], {"type": "array", "items": {"type": "integer"}})
    assert result.errors == [{"path": "1", "message": "expected type integer"}]
