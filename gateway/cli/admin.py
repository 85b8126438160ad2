"""``python gateway.py admin ...``: the operator's commands over a running gateway's admin API.

Tables for people by default, ``--json`` for scripts (the API's answer, unchanged),
exit 1 with the API's own message when it refuses. The gateway is found at
``--url``, by default the listen address of ``--config``; the admin token comes
from ``--token`` or ``INFERMESH_ADMIN_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import quote

from gateway.cli.client import AdminClient, AdminError
from gateway.cli.render import parse_time, table, to_csv, usd, when

TOKEN_ENV = "INFERMESH_ADMIN_TOKEN"
DEFAULT_CONFIG = "conf/gateway.yaml"
USAGE_PAGE = 1000  # the admin API's largest page


def _add_common(parser: argparse.ArgumentParser, leaf: bool) -> None:
    """The connection options, accepted before the command and after it (``admin --json accounts list`` and
    ``admin accounts list --json``); on a leaf they default to SUPPRESS so they never undo the first."""
    unset = argparse.SUPPRESS if leaf else None
    parser.add_argument("--url", default=unset,
                        help="the gateway's base URL (default: the --config file's listen address)")
    parser.add_argument("--config", default=unset, help="config to read the address from (default: "
                                                        "conf/gateway.yaml)")
    parser.add_argument("--token", default=unset, help=f"admin token (default: ${TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if leaf else False,
                        help="print the API's JSON answer (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, leaf=True)

    parser = argparse.ArgumentParser(prog="gateway.py admin", description="Operate a running Infer Mesh "
                                     "gateway through its admin API.")
    _add_common(parser, leaf=False)
    groups = parser.add_subparsers(dest="group", required=True, metavar="{accounts,keys,usage}")

    accounts = groups.add_parser("accounts", help="create, list, show and credit accounts").add_subparsers(
        dest="action", required=True)
    create = accounts.add_parser("create", parents=[common], help="open an account")
    create.add_argument("id")
    create.add_argument("--balance", metavar="USD", help="starting balance (default 0)")
    accounts.add_parser("list", parents=[common], help="every account and its balance")
    show = accounts.add_parser("show", parents=[common], help="one account: balance and keys")
    show.add_argument("id")
    credit = accounts.add_parser("credit", parents=[common], help="top up (applied once per --reference)")
    credit.add_argument("id")
    credit.add_argument("amount", metavar="USD")
    credit.add_argument("--reference", required=True, help="your payment or invoice id; a repeat is ignored")

    keys = groups.add_parser("keys", help="create and revoke keys").add_subparsers(dest="action", required=True)
    key = keys.add_parser("create", parents=[common], help="make a key; it is printed once")
    key.add_argument("account")
    key.add_argument("--name", required=True)
    key.add_argument("--kind", choices=("api", "management"), default="api",
                     help="api (sk-, calls models) or management (mk-, signs in to the console)")
    key.add_argument("--models", help="comma-separated model ids this key may call (default: all)")
    key.add_argument("--limit-usd", metavar="USD", help="spend limit of the key")
    key.add_argument("--period", choices=("day", "week", "month"),
                     help="the limit resets every UTC day/week/month (default: a lifetime limit)")
    key.add_argument("--rpm", type=int, help="requests per minute")
    key.add_argument("--tpm", type=int, help="tokens (input + output) per minute")
    key.add_argument("--max-concurrent", type=int, metavar="N", help="requests in flight at once")
    key.add_argument("--expires-at", metavar="ISO", help="the key stops working then (UTC unless stated)")
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key now")
    revoke.add_argument("key_id")

    usage = groups.add_parser("usage", parents=[common], help="usage records, newest first")
    usage.add_argument("--account", help="one account (default: all)")
    usage.add_argument("--since", metavar="ISO", help="from this time (UTC unless stated)")
    usage.add_argument("--until", metavar="ISO", help="up to this time")
    usage.add_argument("--limit", type=int, default=100, help="at most this many records (default %(default)s)")
    usage.add_argument("--csv", action="store_true", help="CSV with every field, for a spreadsheet")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = AdminClient(_base_url(args), _token(args))
        command: Callable[[AdminClient, argparse.Namespace], Any] = _COMMANDS[(args.group, getattr(args, "action",
                                                                                                      None))]
        answer, text = command(client, args)
    except AdminError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else text)
    return 0


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from gateway.config import ConfigError, load_config
    try:
        listen = load_config(args.config or DEFAULT_CONFIG).listen
    except ConfigError as error:
        raise AdminError(f"cannot read the gateway's address from {args.config or DEFAULT_CONFIG} ({error.problems[0]}); "
                         f"pass --url") from None
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "", "::") else listen.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{listen.port}"


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise AdminError(f"no admin token: pass --token or set {TOKEN_ENV}")
    return str(token)


def _path_part(text: str) -> str:
    return quote(text, safe="")


# -- accounts --------------------------------------------------------------------------------


def _accounts_create(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"id": args.id}
    if args.balance is not None:
        body["balance_usd"] = args.balance
    answer = client.request("POST", "/admin/accounts", body)
    return answer, f"created account {answer['id']} with {usd(answer['balance_usd'])}"


def _accounts_list(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    answer = client.request("GET", "/admin/accounts")
    rows = [(a["id"], usd(a["balance_usd"]), usd(a["reserved_usd"]), usd(a["available_usd"]),
             sum(1 for k in a["keys"] if not k["revoked"])) for a in answer["data"]]
    return answer, table(("account", "balance", "reserved", "available", "active keys"), rows)


def _accounts_show(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    answer = client.request("GET", f"/admin/accounts/{_path_part(args.id)}")
    head = (f"account    {answer['id']}\nbalance    {usd(answer['balance_usd'])}\n"
            f"reserved   {usd(answer['reserved_usd'])}\navailable  {usd(answer['available_usd'])}\n\n")
    return answer, head + keys_table(answer["keys"])


def keys_table(keys: list[dict[str, Any]]) -> str:
    rows = []
    for k in keys:
        limit = "-" if k.get("limit_usd") is None else f"{usd(k['limit_usd'])}/{k.get('limit_period') or 'life'}"
        spent = k.get("window_spent_usd", k.get("spent_usd"))
        rates = ", ".join(f"{k[f]} {label}" for f, label in (("rpm", "rpm"), ("tpm", "tpm"),
                                                              ("max_concurrent", "concurrent")) if k.get(f))
        status = "revoked" if k["revoked"] else "active"
        rows.append((k["key_id"], k["name"], k.get("kind", "api"), k["prefix"] + "…", limit, usd(spent),
                     rates or "-", when(k.get("last_used_at")), status))
    return table(("key id", "name", "kind", "prefix", "limit", "spent", "rate limits", "last used", "status"),
                 rows)


def _accounts_credit(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    answer = client.request("POST", f"/admin/accounts/{_path_part(args.id)}/credit",
                            {"amount_usd": args.amount, "reference": args.reference})
    if answer["applied"]:
        text = f"credited {usd(answer['amount_usd'])} to {args.id}; balance now {usd(answer['balance_usd'])}"
    else:
        text = (f"reference {args.reference!r} was applied before: nothing changed; "
                f"balance {usd(answer['balance_usd'])}")
    return answer, text


# -- keys ------------------------------------------------------------------------------------


def _keys_create(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    body: dict[str, Any] = {"name": args.name}
    if args.kind != "api":
        body["kind"] = args.kind
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.limit_usd is not None:
        body["limit_usd"] = args.limit_usd
    if args.period is not None:
        body["limit_period"] = args.period
    for field in ("rpm", "tpm", "max_concurrent"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.expires_at is not None:
        body["expires_at"] = _time_arg(args.expires_at, "--expires-at")
    answer = client.request("POST", f"/admin/accounts/{_path_part(args.account)}/keys", body)
    return answer, (f"{answer['key']}\n\nkey {answer['key_id']} ({answer['name']}) of account {args.account}: "
                    f"this is the only time the key is shown; store it now.")


def _keys_revoke(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    answer = client.request("DELETE", f"/admin/keys/{_path_part(args.key_id)}")
    return answer, f"revoked {answer['key_id']}"


# -- usage -----------------------------------------------------------------------------------


def _usage(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    if not 1 <= args.limit <= USAGE_PAGE:
        raise AdminError(f"--limit must be from 1 to {USAGE_PAGE}")
    since = None if args.since is None else _time_arg(args.since, "--since")
    until = None if args.until is None else _time_arg(args.until, "--until")
    query = {"limit": str(args.limit)}  # the admin API filters since <= created_at < until itself
    if args.account:
        query["account"] = args.account
    if since is not None:
        query["since"] = repr(since)
    if until is not None:
        query["until"] = repr(until)
    answer = client.request("GET", "/admin/usage", query=query)
    records = answer["data"]
    if args.csv:
        return answer, to_csv(records).rstrip("\n")
    rows = [(when(r.get("created_at")), r.get("account", ""), r.get("key_id", ""), r.get("model", ""),
             r.get("input_tokens", 0), r.get("output_tokens", 0), usd(r.get("cost_usd")), r.get("status", ""))
            for r in records]
    total = sum((_decimal(r.get("cost_usd")) for r in records), start=Decimal(0))
    return answer, table(("time", "account", "key id", "model", "input", "output", "cost", "status"), rows) + \
        f"\n{len(records)} record(s), {usd(total)}"


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def _time_arg(text: str, option: str) -> float:
    try:
        return parse_time(text)
    except ValueError as error:
        raise AdminError(f"{option}: {error}") from None


_COMMANDS: dict[tuple[str, str | None], Callable[[AdminClient, argparse.Namespace], tuple[Any, str]]] = {
    ("accounts", "create"): _accounts_create,
    ("accounts", "list"): _accounts_list,
    ("accounts", "show"): _accounts_show,
    ("accounts", "credit"): _accounts_credit,
    ("keys", "create"): _keys_create,
    ("keys", "revoke"): _keys_revoke,
    ("usage", None): _usage,
}
