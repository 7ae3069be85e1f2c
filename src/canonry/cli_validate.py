"""`canonry validate [BASE..HEAD]`: the CI gate (placeholder until implemented)."""
import click


@click.command()
@click.argument("rev_range", metavar="[BASE..HEAD]", required=False)
def validate_cmd(rev_range):
    """Check every commit of BASE..HEAD (or the whole store)."""
    raise click.ClickException("canonry validate is not implemented yet")
