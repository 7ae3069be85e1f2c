"""`canonry diff BASE..HEAD`: a change told in registry terms (placeholder until implemented)."""
import click


@click.command()
@click.argument("rev_range", metavar="BASE..HEAD")
def diff_cmd(rev_range):
    """Describe what BASE..HEAD changes, in registry terms."""
    raise click.ClickException("canonry diff is not implemented yet")
