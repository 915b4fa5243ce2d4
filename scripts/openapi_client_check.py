"""Uses the Python client that openapi-python-client generates from
`charter openapi` against a served app (the taskboard example, dev
profile): sign up, verify from the dev outbox, log in, then create, list,
read, update (with If-Match) and delete records through the generated
functions and models only. Exits non-zero on the first thing that does not
work. Run by ./scripts/test; arguments: the generated package's parent
folder, the package name, the app's base URL."""

import importlib
import sys
import uuid

import httpx


def main() -> int:
    folder, package, base = sys.argv[1], sys.argv[2], sys.argv[3].rstrip("/")
    sys.path.insert(0, folder)
    pkg = importlib.import_module(package)
    api = lambda name: importlib.import_module(f"{package}.api.{name}")  # noqa: E731
    models = importlib.import_module(f"{package}.models")

    anonymous = pkg.Client(base_url=base, raise_on_unexpected_status=True)
    email = f"client-{uuid.uuid4().hex[:8]}@example.com"
    password = "generated clients work too"

    r = api("auth.signup").sync_detailed(client=anonymous, body=models.SignupBody(email=email, password=password))
    assert r.status_code == 201, (r.status_code, r.content)

    mail = httpx.get(f"{base}/_dev/mail").json()["items"]
    link = next(m["text"] for m in mail if m["to"] == email)
    token = link.split("token=", 1)[1].split()[0]
    r = api("auth.verify_email").sync_detailed(client=anonymous, body=models.VerifyEmailBody(token=token))
    assert r.status_code == 200, (r.status_code, r.content)

    r = api("auth.login").sync_detailed(client=anonymous, body=models.LoginBody(email=email, password=password))
    assert r.status_code == 200, (r.status_code, r.content)
    client = pkg.AuthenticatedClient(base_url=base, token=r.parsed.token, raise_on_unexpected_status=True)

    created = api("project.create_project").sync(client=client, body=models.ProjectCreate(name="From the generated client"))
    assert isinstance(created, models.Project), created
    assert created.name == "From the generated client"

    task = api("task.create_task").sync(client=client, body=models.TaskCreate(title="Typed", project=created.id))
    assert isinstance(task, models.Task), task

    page = api("project.list_projects").sync(client=client, limit=10)
    assert isinstance(page, models.ProjectList), page
    assert [p.id for p in page.items] == [created.id], page

    r = api("project.get_project").sync_detailed(created.id, client=client)
    assert r.status_code == 200, (r.status_code, r.content)
    etag = r.headers["etag"]

    r = api("project.update_project").sync_detailed(created.id, client=client, body=models.ProjectUpdate(name="Renamed"), if_match=etag)
    assert r.status_code == 200 and r.parsed.name == "Renamed", (r.status_code, r.content)
    stale = api("project.update_project").sync_detailed(created.id, client=client, body=models.ProjectUpdate(name="Again"), if_match=etag)
    assert stale.status_code == 412, (stale.status_code, stale.content)
    assert isinstance(stale.parsed, models.Problem), stale.parsed

    invalid = api("project.create_project").sync_detailed(client=client, body=models.ProjectCreate(name=""))
    assert invalid.status_code == 422, (invalid.status_code, invalid.content)
    assert isinstance(invalid.parsed, models.Problem) and invalid.parsed.errors[0].field == "name", invalid.parsed

    r = api("project.delete_project").sync_detailed(created.id, client=client)
    assert r.status_code == 204, (r.status_code, r.content)
    gone = api("task.get_task").sync_detailed(task.id, client=client)
    assert gone.status_code == 404, (gone.status_code, gone.content)
    print("generated client: sign-up, verification, login, create, list, get, update, 412, 422, delete all work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
