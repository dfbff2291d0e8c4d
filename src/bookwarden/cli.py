"""`bookwarden`: every operation an operator runs by hand.

The root command only: it opens each run (the console principal, the audit context, the logs:
`bookwarden.console`) and mounts the command groups every area's `cli.py` declares, in the order
of the manifest (`bookwarden.areas`).
"""

from __future__ import annotations

import sys

import typer

from bookwarden import areas, console
from bookwarden.core.errors import BookwardenError


def root() -> typer.Typer:
    """The root command with every area's commands mounted."""
    areas.load()
    app = typer.Typer(
        help="Bookwarden: library customer data under an enforced security and privacy model.",
        pretty_exceptions_enable=False,  # its tracebacks print local variables: secrets among them
        no_args_is_help=True,
    )
    app.callback()(console.start_run)
    named: dict[str, typer.Typer] = {}
    for module in areas.modules("cli"):
        for group in module.groups:
            if isinstance(group.info.name, str) and group.info.name in named:
                # A higher area adding commands to a lower one's group (`tenant offboard` from backup/).
                named[group.info.name].registered_commands.extend(group.registered_commands)
            elif isinstance(group.info.name, str):  # a named group: `bookwarden <group> <command>`
                named[group.info.name] = group
                app.add_typer(group, name=group.info.name)
            else:  # an area's root-level commands (`bookwarden serve`): registered on the root itself
                app.registered_commands.extend(group.registered_commands)
    console.set_root(app)
    return app


app = root()
os_user = console.os_user
# Commands that run with no database at all (declared by their area's cli.py with the reason).
OFFLINE_COMMANDS = {key: why for module in areas.modules("cli") for key, why in getattr(module, "OFFLINE", {}).items()}


def main() -> None:
    try:
        app()
    except BookwardenError as exc:
        console.err.print(f"[red]error:[/red] {exc.detail}")
        sys.exit(2)


if __name__ == "__main__":
    main()
