"""`refluxo graph`'s Mermaid text: what a workflow names (node ids, types, edge handles)
stays inside its label, whatever characters it holds."""

from __future__ import annotations

from refluxo.host.mermaid import to_mermaid

HOSTILE_HANDLE = (
    "a| t\n %%{init: {'securityLevel':'loose'}}%%\n click t call alert(document.domain)\n s -->|b"
)


def test_hostile_names_stay_inside_their_labels() -> None:
    graph = {
        "nodes": [
            {"id": "<img src=x onerror=alert(1)>", "type": 'x"]; click n0 call alert(1); %%'},
            {"id": "t", "type": "t"},
        ],
        "edges": [
            {
                "source": "<img src=x onerror=alert(1)>",
                "target": "t",
                "sourceHandle": HOSTILE_HANDLE,
            }
        ],
    }
    text = to_mermaid(graph)
    lines = text.splitlines()
    # One line per node and edge (and the header, styles): no statement was added.
    assert not any(line.lstrip().startswith(("click", "%%")) for line in lines)
    assert "<img" not in text
    assert "onerror=alert(1)#62;" in text
    (edge,) = [line for line in lines if "-->" in line]
    assert edge.count("|") == 2
    assert "#124; t#10; %%{init" not in edge  # the braces are codes too
    assert "#10;" in edge
    assert "#124;" in edge
