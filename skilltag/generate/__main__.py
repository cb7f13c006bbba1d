"""``python -m skilltag.generate`` runs the command without the top-level CLI."""

from skilltag.generate.command import generate

generate(prog_name="skilltag generate")
