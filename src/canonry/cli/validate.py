"""`canonry validate [BASE..HEAD]`: the CI gate (the checks are in review/validate.py)."""
import click

__all__ = ["validate_cmd"]


@click.command("validate")
@click.argument("rev_range", metavar="[BASE..HEAD]", required=False)
@click.option("--trust-local-plugins", is_flag=True,
              help="Also run the store's own plugins/*.py as HEAD has them (when its canonry.yaml "
                   "trusts them). Off by default: the branch under review runs no code of its own.")
@click.option("--require-signed", is_flag=True,
              help="Also require every commit checked to carry a valid signature (gpg or ssh, "
                   "verified by `git verify-commit`) made with its author's own key (ssh: the "
                   "allowed-signers file gives the key to the author's email; gpg: a user id "
                   "of the key carries it).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"ok", "checked_commits", "findings": [{commit, path, rule, message}]}.')
@click.pass_context
def validate_cmd(ctx, rev_range, trust_local_plugins, require_signed, as_json):
    """Check every commit of BASE..HEAD (or the whole store): schemas, invariants, policies.

    One line per finding (COMMIT PATH: RULE: MESSAGE). Exit 0 when clean, 1 otherwise.
    """
    report = ctx.obj.store().validate(rev_range, trust_local_plugins=trust_local_plugins,
                                      require_signed=require_signed)
    if as_json:
        from canonry.output import emit_json

        emit_json(report.to_dict())
    else:
        for finding in report:
            click.echo(finding.line())
        click.echo(_summary(report), err=True)
    if not report.ok:
        ctx.exit(1)


def _summary(report) -> str:
    if report.rev_range:
        what = f"{report.checked_commits} commit{'s' * (report.checked_commits != 1)} of {report.rev_range}"
    else:
        what = f"the whole store at {report.head[:10]}"
    if report.ok:
        return f"validate: ok: checked {what}"
    n = len(report)
    return f"validate: {n} finding{'s' * (n != 1)} in {what}"
