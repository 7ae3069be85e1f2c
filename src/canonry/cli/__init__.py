"""The `canonry` command: click commands that parse, call the Python API and format; no logic here.

`launcher` is the console script (a plain `show` and `--help` without click), `app` the click group,
`help` the table of built-in commands, `common` the options and context they share, `messages` the
one-line error wording, `render` the human output; one module per command group holds its commands.
"""
