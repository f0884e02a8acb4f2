"""Drop Cowboy contact lists through the sandbox: push eligible contacts, show, rename, delete."""

from __future__ import annotations

from .conftest import write_campaign

CONTACTS = """phone,opt_in,first_name,last_name,postal_code,favourite
+12025550101,yes,Ada,Lovelace,20001,tea
+12025550102,no,Bob,Nope,20002,coffee
+12025550103,true,Cy,Young,20003,
bad,yes,Dee,Bad,20004,
"""


def test_lists_push_appends_only_eligible_contacts_with_mapped_fields(env, sandbox):
    path = write_campaign(env.tmp, "e2e-lists", CONTACTS)
    r = env.cli("lists", "push", str(path), "--list-name", "winter", check=True)
    assert "created list 'winter'" in r.stdout and "pushed 2 contact(s)" in r.stdout
    (append,) = [q for q in sandbox.requests("dropcowboy") if q["path"].endswith("/contacts")]
    body = append["json"]
    assert body["fields"][0] == "phone" and {"first_name", "last_name", "postal", "custom1"} <= set(body["fields"])
    assert [row[0] for row in body["values"]] == ["+12025550101", "+12025550103"]
    assert body["region"] == "US"

    again = env.cli("lists", "push", str(path), "--list-name", "winter", check=True)
    assert "reused list 'winter'" in again.stdout
    shown = env.cli("lists", "show", str(path), "winter", check=True).stdout
    assert "contact_count: 4" in shown
    env.cli("lists", "rename", str(path), "winter", "winter-2026", check=True)
    assert "list_name: winter-2026" in env.cli("lists", "show", str(path), "winter-2026", check=True).stdout
    env.cli("lists", "delete", str(path), "winter-2026", check=True)
    gone = env.cli("lists", "show", str(path), "winter-2026")
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr and "Traceback" not in gone.stderr
