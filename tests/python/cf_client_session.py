"""A session of the PyPI client `cloudfoundry-client` against the service.

Logs in through the UAA the target's root document names, then, with the client's own
calls: creates a bits package, uploads a zip through the package's `upload` link, polls
until READY, lists packages (filtered, and page by page following `next` links), copies
the package to a second app, polls the copy until READY and downloads both with the
client's authenticated session. Prints a JSON summary on stdout; exits 1 on any mismatch.

Environment: CF_TARGET, CF_USERNAME, CF_PASSWORD, CF_APP_GUID, CF_COPY_APP_GUID,
CF_ZIP_PATH, CF_POLL_SECONDS (default 120).
"""

import hashlib
import json
import os
import sys
import time

from cloudfoundry_client.client import CloudFoundryClient
from cloudfoundry_client.v3.packages import PackageType

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def wait_final(client, guid, deadline):
    """Polls GET /v3/packages/:guid until the package leaves PROCESSING_UPLOAD / COPYING."""
    polls = 0
    while True:
        package = client.v3.packages.get(guid)
        polls += 1
        if package["state"] not in ("PROCESSING_UPLOAD", "COPYING"):
            return package, polls
        if time.monotonic() > deadline:
            raise SystemExit("package %s still %s when the poll ran out" % (guid, package["state"]))
        time.sleep(0.05)


def download(client, package):
    """GET on the package's download link with the client's session (redirects followed)."""
    response = client.get(package["links"]["download"]["href"])
    return response.content, [r.status_code for r in response.history] + [response.status_code]


def main():
    env = os.environ
    app, copy_app = env["CF_APP_GUID"], env["CF_COPY_APP_GUID"]
    with open(env["CF_ZIP_PATH"], "rb") as f:
        zip_bytes = f.read()
    sha1 = hashlib.sha1(zip_bytes).hexdigest()
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    deadline = time.monotonic() + float(env.get("CF_POLL_SECONDS", "120"))

    client = CloudFoundryClient(env["CF_TARGET"], client_id="cf", client_secret="")
    client.init_with_user_credentials(env["CF_USERNAME"], env["CF_PASSWORD"])

    created = client.v3.packages.create(app, PackageType.BITS)
    guid = created["guid"]
    check(created["type"] == "bits", "created type %r" % created["type"])
    check(created["state"] == "AWAITING_UPLOAD", "created state %r" % created["state"])
    check(created["relationships"]["app"]["data"]["guid"] == app, "created app relationship")

    with open(env["CF_ZIP_PATH"], "rb") as bits:
        uploaded = created.upload(files={"bits": ("app.zip", bits)})
    check(uploaded["guid"] == guid, "upload answered package %r" % uploaded["guid"])
    check(uploaded["state"] == "PROCESSING_UPLOAD", "upload state %r" % uploaded["state"])

    ready, polls = wait_final(client, guid, deadline)
    check(ready["state"] == "READY", "uploaded package ended %r (%r)" % (ready["state"], ready["data"]["error"]))
    check(ready["data"]["hash"]["value"] == sha1, "hash %r, zip %s" % (ready["data"]["hash"]["value"], sha1))
    check(ready["data"]["checksum"]["value"] == sha256, "checksum %r" % ready["data"]["checksum"]["value"])

    listed_for_app = [p["guid"] for p in client.v3.packages.list(app_guids=[app])]
    check(listed_for_app == [guid], "app_guids list %r" % listed_for_app)

    copy = client.v3.packages.copy(guid, copy_app)
    copy_guid = copy["guid"]
    check(copy_guid != guid, "the copy has the source's guid")
    check(copy["state"] == "COPYING", "copy state %r" % copy["state"])
    check(copy["relationships"]["app"]["data"]["guid"] == copy_app, "copy app relationship")

    copied, copy_polls = wait_final(client, copy_guid, deadline)
    check(copied["state"] == "READY", "copy ended %r (%r)" % (copied["state"], copied["data"]["error"]))
    check(copied["data"]["hash"]["value"] == sha1, "copy hash %r" % copied["data"]["hash"]["value"])

    # One package a page: the client walks the pagination `next` links to the end.
    paged = client.v3.packages.list(per_page=1)
    paged_guids = [p["guid"] for p in paged]
    check(guid in paged_guids and copy_guid in paged_guids, "paged list %r" % paged_guids)
    check(len(paged_guids) == len(set(paged_guids)), "paged list repeats a package %r" % paged_guids)
    check(len(paged_guids) == paged.total_results, "paged list %d of %d" % (len(paged_guids), paged.total_results))

    downloaded, statuses = download(client, ready)
    check(downloaded == zip_bytes, "download of %s differs (%d bytes)" % (guid, len(downloaded)))
    copy_downloaded, copy_statuses = download(client, copied)
    check(copy_downloaded == zip_bytes, "download of the copy differs (%d bytes)" % len(copy_downloaded))

    summary = {
        "package": guid,
        "copy": copy_guid,
        "created_state": created["state"],
        "upload_state": uploaded["state"],
        "state": ready["state"],
        "hash": ready["data"]["hash"]["value"],
        "checksum": ready["data"]["checksum"]["value"],
        "polls": polls,
        "copy_initial_state": copy["state"],
        "copy_state": copied["state"],
        "copy_hash": copied["data"]["hash"]["value"],
        "copy_polls": copy_polls,
        "listed_for_app": listed_for_app,
        "paged_guids": paged_guids,
        "paged_total": paged.total_results,
        "download_sha1": hashlib.sha1(downloaded).hexdigest(),
        "download_statuses": statuses,
        "copy_download_sha1": hashlib.sha1(copy_downloaded).hexdigest(),
        "copy_download_statuses": copy_statuses,
        "api_v3_url": client.info.api_v3_url,
        "authorization_endpoint": client.info.authorization_endpoint,
        "failures": failures,
    }
    print(json.dumps(summary))
    if failures:
        for failure in failures:
            print("mismatch: " + failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
