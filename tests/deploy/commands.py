"""Checks that a command a deployment file runs names a real module or `chorus` subcommand."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shlex

from launcher.cli import main

# Shell words that join commands; what follows each starts a new command.
_SEPARATORS = {"&&", "||", ";", "{", "}", "|"}


def shell_commands(argv: list[str]) -> list[list[str]]:
    """The commands in `argv`: itself, or the commands of the script after `sh -c`."""
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh") and argv[1] == "-c":
        words = shlex.split(argv[2].replace(";", " ; "), posix=True)
        commands: list[list[str]] = [[]]
        for word in words:
            if word in _SEPARATORS:
                commands.append([])
            else:
                commands[-1].append(word)
        # `2>/dev/null` is a redirection, not an argument.
        return [[word for word in command if not word.startswith("2>")] for command in commands if command]
    return [argv]


def problem(command: list[str]) -> str | None:
    """Why `command` would fail to start, or None when it names something that exists."""
    if command[:2] == ["python", "-m"]:
        module = command[2]
        if importlib.util.find_spec(module) is None or importlib.util.find_spec(f"{module}.__main__") is None:
            return f"python -m {module}: no such runnable module"
        return None
    if command[0] == "chorus":
        # --help after the arguments makes argparse check every subcommand name and exit 0, or 2;
        # it stops before options, so each option is looked up in the help it prints.
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), contextlib.redirect_stderr(io.StringIO()):
            try:
                main([*command[1:], "--help"])
            except SystemExit as exit_:
                if exit_.code != 0:
                    return f"{shlex.join(command)}: not a chorus command"
            else:
                return f"{shlex.join(command)}: chorus did not parse it"
        unknown = [w for w in command if w.startswith("--") and w.split("=")[0] not in help_text.getvalue()]
        return f"{shlex.join(command)}: no option {', '.join(unknown)}" if unknown else None
    return None


def chorus_or_python_commands(argv: list[str]) -> list[list[str]]:
    """The commands of `argv` that start Chorus code (others, like `echo`, are not checked)."""
    return [c for c in shell_commands(argv) if c[0] == "chorus" or c[:2] == ["python", "-m"]]
