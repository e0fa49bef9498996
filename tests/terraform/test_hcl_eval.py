"""The HCL expression evaluator the other tests rely on: it computes what Terraform would."""

from __future__ import annotations

from typing import Any

import pytest

from tests.terraform.hcl_config import TerraformConfig
from tests.terraform.hcl_eval import Evaluator, HclError, Ref


@pytest.fixture
def evaluator() -> Evaluator:
    config = TerraformConfig()
    config.variables = {
        "n": {"default": 3},
        "name": {"default": "wf"},
        "items": {"default": ["a", "bb", "ccc"]},
        "required": {},
    }
    config.locals = {
        "doubled": "${var.n * 2}",
        "label": "${var.name}-${local.doubled}",
        "cycle": "${local.cycle}",
    }
    return Evaluator(config, {"name": "prod"})


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 % 3", 1),
        ("-var.n + 1", -2),
        ("var.n >= 3 && !(var.n > 3)", True),
        ("var.n == 3.0", True),
        ('"3" == 3', False),
        ("true != false", True),
        ('var.n > 2 ? "big" : "small"', "big"),
        ("min(5, var.n, 4)", 3),
        ("pow(2, 10)", 1024),
        ("floor(2.7) + ceil(2.1)", 5),
        ("sum([for k in range(1, 4) : k * k])", 14),
        ('[for s in var.items : length(s) if s != "bb"]', [1, 3]),
        ("[for i, s in var.items : i]", [0, 1, 2]),
        ("slice(var.items, 1, 3)", ["bb", "ccc"]),
        ('concat(["x"], var.items)[0]', "x"),
        ('{a = 1, "b" = var.n}.b', 3),
        ("merge({a = 1}, {b = 2}, {a = 3})", {"a": 3, "b": 2}),
        ('join("-", sort(distinct(["b", "a", "b"])))', "a-b"),
        ('tostring(12) == "12"', True),
        ('tonumber("1.5")', 1.5),
        ('can(regex("^a+$", "aaa"))', True),
        ('can(regex("^a+$", "aab"))', False),
        ('try(tonumber("x"), 0)', 0),
        ("alltrue([for s in var.items : length(s) > 0])", True),
        ("coalesce(null, var.name)", "prod"),
        ('"${var.name}/x"', "prod/x"),
        ('"a\\\\.b"', "a\\.b"),
        ('"q\\"q"', 'q"q'),
        ("local.label", "prod-6"),
        ('length(split(" ", trimspace(" a b ")))', 2),
        ('base64encode("{}")', "e30="),
    ],
)
def test_expressions(evaluator: Evaluator, expression: str, value: Any) -> None:
    assert evaluator.expression(expression) == value


def test_top_level_strings_come_unescaped_from_python_hcl2(evaluator: Evaluator) -> None:
    # python-hcl2 applies a top-level string's escapes itself, except $${.
    assert evaluator.evaluate("a\\.b") == "a\\.b"
    assert evaluator.evaluate("$${literal}") == "${literal}"
    assert evaluator.evaluate("${var.n}") == 3  # a lone ${} keeps its type
    assert evaluator.evaluate("n=${var.n}") == "n=3"
    assert evaluator.evaluate({"k": ["${var.name}"]}) == {"k": ["prod"]}


def test_references_to_resources_stay_symbolic(evaluator: Evaluator) -> None:
    value = evaluator.expression("google_service_account.api.email")
    assert isinstance(value, Ref)
    assert value == "${google_service_account.api.email}"
    uri = evaluator.expression("google_cloudfunctions2_function.f.service_config[0].uri")
    assert uri == "${google_cloudfunctions2_function.f.service_config[0].uri}"
    assert evaluator.expression('"https://${data.google_project.p.number}.x"') == (
        "https://${data.google_project.p.number}.x"
    )
    assert evaluator.expression("ephemeral.random_password.k.result") == (
        "${ephemeral.random_password.k.result}"
    )


@pytest.mark.parametrize(
    "expression",
    [
        "var.missing",
        "var.required",
        "local.missing",
        "local.cycle",
        "1 + true",
        "sum([])",
        "slice(var.items, 2, 5)",
        "unknownfunc(1)",
        "true ? 1",
        'regex("z", "abc")',
        "[for x in 3 : x]",
    ],
)
def test_errors_are_reported(evaluator: Evaluator, expression: str) -> None:
    with pytest.raises(HclError):
        evaluator.expression(expression)


def test_validation_errors_name_the_failing_rule() -> None:
    config = TerraformConfig()
    config.variables = {
        "n": {
            "default": 5,
            "validation": [
                {"condition": "${var.n >= 1}", "error_message": "at least 1"},
                {"condition": "${var.n <= var.limit}", "error_message": "at most the limit"},
            ],
        },
        "limit": {"default": 4},
    }
    assert Evaluator(config).validation_errors("n") == ["at most the limit"]
    assert Evaluator(config, {"limit": 10}).validation_errors("n") == []
    assert Evaluator(config, {"n": 0, "limit": 10}).validation_errors("n") == ["at least 1"]
