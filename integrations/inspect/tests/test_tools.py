"""Inspect's in-sandbox tools (bash_session and text_editor, which inject Inspect's sandbox-tools
binary, and python) on an Offswitch sandbox, on the host's root and on an image's."""

from __future__ import annotations

import pytest
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.solver import basic_agent
from inspect_ai.tool import bash_session, python, text_editor

from inspect_offswitch import OffswitchSandboxConfig

from scripted import scripted_model, turn

CALLS = [
    turn("text_editor", command="create", path="/tmp/notes.txt", file_text="alpha\nbeta\n"),
    turn("text_editor", command="str_replace", path="/tmp/notes.txt", old_str="beta", new_str="gamma"),
    turn("bash_session", action="type_submit", input="cat /tmp/notes.txt; echo sum=$((40 + 2))"),
    turn("python", code="print(sum(range(10)))"),
    turn("submit", answer="done"),
]


@pytest.mark.parametrize("root", ["host-root", "image-root"])
def test_inspect_tools_work(daemon, request, tmp_path, root):
    image = request.getfixturevalue("debian_image") if root == "image-root" else None
    task = Task(
        dataset=[Sample(input="use the tools")],
        solver=basic_agent(tools=[bash_session(), text_editor(), python()], message_limit=20),
        sandbox=("offswitch", OffswitchSandboxConfig(socket=daemon, image=image)),
    )
    (log,) = eval(task, model=scripted_model(CALLS), log_dir=str(tmp_path), display="none")
    assert log.status == "success", log.error
    tools = [m for m in log.samples[0].messages if m.role == "tool"]
    errors = [(m.function, m.error) for m in tools if m.error is not None]
    assert not errors, errors
    bash_output = next(m.text for m in tools if m.function == "bash_session")
    assert "alpha\ngamma" in bash_output and "sum=42" in bash_output, bash_output
    assert next(m.text for m in tools if m.function == "python").strip() == "45"
