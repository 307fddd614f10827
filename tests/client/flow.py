"""What a mobile developer's first session with redbank looks like, through a client generated
from the app's own OpenAPI document by openapi-python-client: sign in, read the account and its
transactions, send a small transfer, find it by search, list the sessions and read the security
activity. Every answer must parse into the generated models (an answer the client cannot read
comes back as None or raises). Run by tests/contract.rs:

    python flow.py <base_url> <username> <password> <payee_account>
"""

import sys
import time
import uuid

from redbank_api_client import AuthenticatedClient, Client
from redbank_api_client.api.account import api_account, api_search, api_transactions
from redbank_api_client.api.factors import security_activity
from redbank_api_client.api.session import api_login, api_me, api_sessions
from redbank_api_client.api.transfers import create_transfer, get_transfer
from redbank_api_client.models import (
    AccountView,
    ApiLogin,
    Me,
    NewTransfer,
    SearchPage,
    SecurityActivity,
    SessionList,
    SignedInBody,
    TransferView,
)


def expect(value, kind, what):
    if not isinstance(value, kind):
        sys.exit(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


def main(base_url, username, password, payee):
    with Client(base_url=base_url, raise_on_unexpected_status=True) as public:
        body = ApiLogin(username=username, password=password)
        signed_in = expect(api_login.sync(client=public, body=body), SignedInBody, "sign-in")
    token = signed_in.token
    with AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True) as c:
        signed_in_flow(c, username, payee)


def signed_in_flow(client, username, payee):
    me = expect(api_me.sync(client=client), Me, "GET /api/v1/me")
    if me.user.username != username:
        sys.exit(f"signed in as {me.user.username}, not {username}")
    account = expect(api_account.sync(client=client), AccountView, "GET /api/v1/account")
    before = api_transactions.sync(client=client, limit=10)
    expect(before, list, "GET /api/v1/transactions")

    reference = f"client {uuid.uuid4().hex[:8]}"
    new = NewTransfer(to_account=payee, amount="1.25", reference=reference)
    sent = create_transfer.sync(client=client, body=new, idempotency_key=str(uuid.uuid4()))
    sent = expect(sent, TransferView, "POST /api/v1/transfers")
    if sent.status.value != "completed":
        sys.exit(f"a small transfer is completed at once, not {sent.status.value}")
    again = expect(get_transfer.sync(client=client, id=sent.id), TransferView, "GET transfer")
    if again.id != sent.id or again.amount != 1.25:
        sys.exit(f"the transfer read back differs: {again!r}")

    after = expect(api_transactions.sync(client=client, limit=10), list, "transactions after")
    if not any(tx.description == reference for tx in after):
        sys.exit(f"the transfer is not among the newest transactions of {account.number}")
    # The search index follows the write within moments.
    for _ in range(50):
        found = expect(api_search.sync(client=client, q=reference), SearchPage, "search")
        if found.total >= 1:
            break
        time.sleep(0.1)
    else:
        sys.exit(f"search did not find {reference!r}")

    sessions = expect(api_sessions.sync(client=client), SessionList, "GET /api/v1/sessions")
    if not any(s.current for s in sessions.sessions):
        sys.exit("the session list does not mark the current session")
    activity = security_activity.sync(client=client)
    activity = expect(activity, SecurityActivity, "GET /api/v1/security/activity")
    kinds = {entry.type_.value for entry in activity.activity}
    if "sign_in" not in kinds:
        sys.exit(f"the security activity has no sign-in: {sorted(kinds)}")
    print(f"ok: {len(after)} transactions, {len(sessions.sessions)} sessions, {sorted(kinds)}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
