"""`canonry diff BASE..HEAD`: what a branch changes, in registry terms (review/diff.py does the work)."""
import click

__all__ = ["diff_cmd"]


@click.command("diff")
@click.argument("rev_range", metavar="BASE..HEAD")
@click.option("--format", "-f", "format_", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="markdown: ready to post as a pull-request comment.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def diff_cmd(c, rev_range, format_, as_json):
    """Describe what HEAD changes over its merge base with BASE (like `git diff BASE...HEAD`):
    alias moves with the metrics behind them, links, tags, settings. Reads only; exit 0."""
    if c is not None:
        store = c.store()
    else:  # invoked on its own rather than through the canonry group
        from canonry.store import open_store

        store = open_store()
    review = store.diff(rev_range)
    if as_json or format_ == "json":
        from canonry.output import emit_json

        return emit_json(review.to_list())
    from canonry.review.diff import render_markdown, render_text

    click.echo(render_markdown(review) if format_ == "markdown" else render_text(review))
