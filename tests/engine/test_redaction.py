"""Redaction of outputs and error texts before they are recorded."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

import pytest

from refluxo import (
    NodeDefinition,
    Plugin,
    PluginContext,
    RedactionPlugin,
    StepResult,
    WorkflowEngine,
)
from refluxo.redaction import Redactor
from tests.support.engine import chain

SECRET = "sk_live_0123456789"


async def test_configured_keys_and_global_values_are_masked() -> None:
    def leaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(
            {
                "user": "ada",
                "password": "hunter2",
                "nested": [{"Token": "abc"}, f"Bearer {globals['stripe']}"],
                "count": 3,
            }
        )

    engine = WorkflowEngine(
        chain("a"), {"echo": NodeDefinition(leaky)}, plugins=[RedactionPlugin()]
    )
    final = await engine.execute(initial_node_id="a", globals={"stripe": SECRET})
    assert final.context["a"][0].output == {
        "user": "ada",
        "password": "[REDACTED]",
        "nested": [{"Token": "[REDACTED]"}, "Bearer [REDACTED]"],
        "count": 3,
    }
    assert SECRET not in final.model_dump_json()


async def test_secrets_in_error_texts_are_masked() -> None:
    def failing(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise PermissionError(f"key {globals['stripe']} was revoked")

    engine = WorkflowEngine(
        chain("a"), {"echo": NodeDefinition(failing)}, plugins=[RedactionPlugin()]
    )
    final = await engine.execute(initial_node_id="a", globals={"stripe": SECRET})
    assert final.context["a"][0].error == "PermissionError: key [REDACTED] was revoked"


async def test_a_failing_output_transform_is_a_node_error_and_records_nothing() -> None:
    class Broken(Plugin):
        def transform_output(self, ctx: PluginContext) -> Any:
            raise RuntimeError("cannot redact")

    engine = WorkflowEngine(
        chain("a"), {"echo": NodeDefinition(lambda *_: StepResult(SECRET))}, plugins=[Broken()]
    )
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert final.context["a"][0].output is None
    assert SECRET not in final.model_dump_json()


async def test_transforms_chain_in_plugin_order() -> None:
    class Upper(Plugin):
        def transform_output(self, ctx: PluginContext) -> Any:
            return ctx.output.upper()

    class Exclaim(Plugin):
        async def transform_output(self, ctx: PluginContext) -> Any:
            return ctx.output + "!"

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(lambda *_: StepResult("hi"))},
        plugins=[Upper(), Exclaim()],
    )
    final = await engine.execute(initial_node_id="a")
    assert final.context["a"][0].output == "HI!"


async def _recorded(output: Any, globals_: dict[str, Any]) -> Any:
    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(lambda *_: StepResult(output))},
        plugins=[RedactionPlugin()],
    )
    final = await engine.execute(initial_node_id="a", globals=globals_)
    return final.context["a"][0].output


async def test_short_secrets_are_masked_as_written_long_ones_in_any_case() -> None:
    long = "Mixed<Case>&Secret99"
    output = {
        "short": "ERROR, error, Error",
        "error": 1,
        "cases": [long.upper(), long.lower(), long.capitalize(), long.title(), long.swapcase()],
        "html": [html.escape(long), html.escape(long, quote=False)],
    }
    recorded = await _recorded(output, {"level": "ERROR", "key": long})
    assert recorded == {
        "short": "[REDACTED], error, Error",
        "error": 1,
        "cases": ["[REDACTED]"] * 5,
        "html": ["[REDACTED]"] * 2,
    }


async def test_a_secret_is_masked_inside_the_string_or_number_it_is_in() -> None:
    output = {"pin": 123456, "note": 'says "123456"\n', "ok": True, "none": None}
    recorded = await _recorded(output, {"pin": "123456", "flag": "true", "nothing": "null"})
    # A masked number becomes a string; true and null are no secrets (JSON is made of them).
    assert recorded == {
        "pin": "[REDACTED]",
        "note": 'says "[REDACTED]"\n',
        "ok": True,
        "none": None,
    }


async def test_a_secret_across_the_json_syntax_masks_the_whole_output() -> None:
    recorded = await _recorded(["user", "hunter22"], {"pair": 'user","hunter22'})
    assert recorded == "[REDACTED]"


async def test_overlapping_secrets_are_masked_whole() -> None:
    recorded = await _recorded(
        {"v": "1234abcd5678", "w": "1234abcd5678abcd5678!"}, {"a": "1234abcd", "b": "abcd5678"}
    )
    assert recorded == {"v": "[REDACTED]", "w": "[REDACTED]!"}


@pytest.mark.parametrize("secret", ["EDAC", "REDACTED", "[REDACTED]", "ACTED]"])
def test_masking_twice_changes_nothing_even_for_a_secret_inside_the_mask(secret: str) -> None:
    redactor = Redactor([secret])
    once = redactor.mask_text(f"x{secret}x and {secret}")
    assert secret not in once.replace(redactor.mask, "")
    assert redactor.mask_text(once) == once


ENCODERS = {
    "base64": (base64.b64encode, 6),
    "urlsafe_base64": (base64.urlsafe_b64encode, 6),
    "base32": (base64.b32encode, 5),
}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("secret", ["pa55", "hunter22", "sk_live_0123456789>?~"])
@pytest.mark.parametrize("before", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("after", [0, 1, 2])
def test_no_character_holding_a_bit_of_a_secret_survives_inside_base64_or_base32(
    encoder: str, secret: str, before: int, after: int
) -> None:
    """Only the groups made of the secret's bytes alone were masked: the characters that
    also hold a neighbour's bits kept up to two bytes at each end readable (four in
    base32), and a short secret that fills no group (HTTP Basic auth's ``user:pa55``)
    stayed whole."""
    encode, bits = ENCODERS[encoder]
    prefix, suffix = b"u:x:"[:before], b"!#"[:after]
    encoded = encode(prefix + secret.encode() + suffix).decode()
    masked = Redactor([secret]).mask_text(encoded)
    start = masked.index("[REDACTED]")
    end = len(encoded) - (len(masked) - start - len("[REDACTED]"))
    assert masked == encoded[:start] + "[REDACTED]" + encoded[end:]
    first_bit, end_bit = len(prefix) * 8, (len(prefix) + len(secret)) * 8
    holding = [i for i in range(len(encoded)) if i * bits < end_bit and (i + 1) * bits > first_bit]
    assert start <= holding[0], (encoded, masked)
    assert holding[-1] < end, (encoded, masked)


@pytest.mark.parametrize(
    "spelled",
    [
        json.dumps({"url": "https://admin:" + SECRET + "/x"}).replace("/", "\\/"),
        "İstanbul " + SECRET.swapcase(),
        "".join(f"\\u{ord(c):04x}" for c in SECRET),
        "".join(f"\\u{ord(c):04X}" for c in SECRET),
        "".join(f"&#{ord(c)};" for c in SECRET),
        "".join(f"&#x{ord(c):x};" for c in SECRET),
    ],
)
def test_a_secret_is_found_in_more_spellings(spelled: str) -> None:
    """JSON that escapes "/", a mixed case beside an "İ", every character escaped."""
    masked = Redactor([SECRET]).mask_text(spelled)
    assert "[REDACTED]" in masked
    assert SECRET.lower() not in masked.lower()
    assert "0123456789" not in masked


@pytest.mark.parametrize("escapes", [1, 2])
@pytest.mark.parametrize("before", [1, 2])
def test_base64_holding_a_secret_is_masked_when_json_escapes_its_slashes(
    escapes: int, before: int
) -> None:
    """PHP's json_encode writes "/" as "\\/" (and a store's JSON escapes that backslash
    again): the whole secret was readable in such base64 whenever it held a "/"."""
    secret = "s3cr?t?>key"
    encoded = base64.b64encode(b"XYZ"[:before] + secret.encode() + b"YY").decode()
    assert "/" in encoded
    text = json.dumps({"auth": encoded}).replace("/", "\\/")
    if escapes == 2:
        text = json.dumps(text)
    masked = Redactor([secret]).mask_text(text)
    assert "[REDACTED]" in masked
    kept = masked.replace("\\", "").split("[REDACTED]")
    for piece in kept:
        assert piece not in encoded or len(piece.strip('{}":auth= ')) <= 2


@pytest.mark.parametrize(
    ("secret", "text"),
    [("passwordΣ", "id=passwordΣabc"), ("abcdefgς", "xABCDEFGΣy"), ("ΣΣΣΣΣΣΣΣ", "σσσσσσσσς")],
)
def test_a_secret_ending_in_sigma_is_found_inside_a_longer_word(secret: str, text: str) -> None:
    """Lower-casing turns "Σ" into "ς" only at the end of a word: the secret, folded on
    its own, never matched the text folded around it."""
    assert "[REDACTED]" in Redactor([secret]).mask_text(text)


async def test_a_global_with_a_lone_surrogate_fails_no_node() -> None:
    """Its URL forms raised (no UTF-8): every node of the run failed, "redaction failed"."""

    def plain(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"plain": "ok", "near": "abcd"})

    engine = WorkflowEngine(
        chain("a"), {"echo": NodeDefinition(plain)}, plugins=[RedactionPlugin()]
    )
    final = await engine.execute(initial_node_id="a", globals={"k": "\ud800abcd"})
    assert final.status == "completed", final.metadata
    assert final.context["a"][0].output == {"plain": "ok", "near": "abcd"}
