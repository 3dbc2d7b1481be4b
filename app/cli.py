"""The `phononscreen` command line: a click group whose subcommands live in app/commands/."""

from __future__ import annotations

import os

# numpy's OpenBLAS pool and torch's threads fight over the cores (measured: a relax step 3.5x
# slower); this must happen before numpy is first imported anywhere in the process.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phononscreen")
def main() -> None:
    """Screen generated crystal structures for dynamical stability.

    Relaxes each structure with a machine-learned interatomic potential, computes its phonons
    across the Brillouin zone with phonopy and says whether it is dynamically stable.
    """


def _register() -> None:
    # Imported lazily by name so that one broken optional group never hides the others.
    from importlib import import_module

    for module, names in (
        ("app.commands.screen", ("screen",)),
        ("app.commands.service", ("serve", "api", "worker", "beat", "db")),
        ("app.commands.submit", ("submit",)),
        ("app.commands.export", ("export",)),
        ("app.commands.keys", ("keys",)),
        ("app.commands.sources", ("sources",)),
        ("app.commands.report", ("report",)),
    ):
        try:
            mod = import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        for name in names:
            cmd = getattr(mod, name, None)
            if cmd is not None:
                main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
