"""human-web: token-guarded local page, answers stored at once, resume after closing the browser."""
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from acqkit.config import RunConfig
from acqkit.store.ledger import Ledger
from acqkit.round.label import label_pairs
from acqkit_plugins.human_web import HumanWebLabeler
from labeling_helpers import PROMPTS, pairs, table

pytestmark = pytest.mark.integration  # a local web server and a headless browser


class FakeSession:
    """What ``label_pairs`` reads from a session; the labeling path needs no model."""

    task = policy = reference = tokenizer = None
    train_prompts = PROMPTS


def start(labeler, ledger_path: Path, todo):
    """Run ``label_pairs`` in a thread, as the loop would; returns (thread, result holder, url)."""
    result = {}
    cfg = RunConfig(model="tiny", labeler="human-web", ledger=str(ledger_path))

    def work():
        result["labels"] = label_pairs(FakeSession(), cfg, labeler, "human-web", todo, table(), 1, None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while labeler.url is None:
        assert time.monotonic() < deadline and thread.is_alive(), "the labeler never served its page"
        time.sleep(0.02)
    return thread, result, labeler.url


def request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def test_the_page_needs_the_token_and_answers_go_to_the_ledger(tmp_path):
    labeler = HumanWebLabeler()
    thread, result, url = start(labeler, tmp_path / "l.sqlite", pairs((0, 1), (5, 6), (0, 2)))
    assert url.startswith("http://127.0.0.1:")
    base, token = url.split("/?token=")
    for bad in (base + "/", base + "/api/state?token=nope", base + "/api/state"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            request(bad)
        assert exc.value.code == 403
    status, page = request(url)
    assert status == 200 and b"Which response is better?" in page
    state = json.loads(request(f"{base}/api/state?token={token}")[1])
    assert state["total"] == 3 and state["done"] == 0 and state["item"]["prompt"] == "Review Citizen Kane."
    state = json.loads(request(f"{base}/api/answer?token={token}", {"index": 0, "key": "b"})[1])
    assert state["done"] == 1 and state["item"]["index"] == 1
    with Ledger(tmp_path / "l.sqlite") as ledger:  # stored before the page saw the reply
        assert [(r.text_a, r.p) for r in ledger.records()] == [("A masterpiece.", 0.0)]
    with pytest.raises(urllib.error.HTTPError) as exc:
        request(f"{base}/api/answer?token={token}", {"index": 1, "key": "z"})
    assert exc.value.code == 400
    request(f"{base}/api/answer?token={token}", {"index": 1, "key": "s"})
    request(f"{base}/api/answer?token={token}", {"index": 2, "key": "a"})
    thread.join(10)
    assert not thread.is_alive() and labeler.url is None
    labels = result["labels"]
    assert labels[["a", "b", "p", "cost"]].values.tolist() == [[0, 1, 0.0, 1], [0, 2, 1.0, 1]]


def _chrome():
    """A headless Chromium driven by Debian's chromedriver (the skipif below says what is missing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    return webdriver, Service, shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="the browser test needs Debian's chromium and chromium-driver "
                           "(apt-get install -y chromium chromium-driver; .ci/run installs them)")
def test_a_person_labels_in_headless_chromium_and_resumes_after_closing_it(tmp_path):
    webdriver, Service, browser, driver_path = _chrome()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def open_browser(profile):
        opts = webdriver.ChromeOptions()
        opts.binary_location = browser
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     f"--user-data-dir={tmp_path / profile}"):
            opts.add_argument(flag)
        return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)

    def progress_is(drv, text):
        WebDriverWait(drv, 15).until(lambda d: d.find_element(By.ID, "progress").text == text)

    labeler = HumanWebLabeler()
    thread, result, url = start(labeler, tmp_path / "l.sqlite", pairs((0, 1), (5, 6), (0, 2), (6, 7)))
    drv = open_browser("profile-1")
    try:
        drv.get(url)
        progress_is(drv, "1 of 4")
        assert drv.find_element(By.ID, "prompt").text == "Review Citizen Kane."
        assert drv.find_element(By.ID, "resp-a").text == "A masterpiece."
        assert drv.find_element(By.ID, "resp-b").text == "Dull."
        drv.find_element(By.TAG_NAME, "body").send_keys("a")  # keyboard
        progress_is(drv, "2 of 4")
        assert drv.find_element(By.ID, "prompt").text == "Review Vertigo."
        drv.find_element(By.ID, "btn-b").click()  # mouse
        progress_is(drv, "3 of 4")
    finally:
        drv.quit()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert sorted((r.text_a, r.p) for r in ledger.records()) == [("A masterpiece.", 1.0), ("Hypnotic.", 0.0)]

    drv = open_browser("profile-2")  # a new browser: nothing is kept client-side
    try:
        drv.get(url)
        progress_is(drv, "3 of 4")  # resumes at the first unanswered pair
        assert drv.find_element(By.ID, "resp-b").text == "Bold, moving cinema."
        drv.find_element(By.TAG_NAME, "body").send_keys("t")
        progress_is(drv, "4 of 4")
        drv.find_element(By.ID, "btn-s").click()
        WebDriverWait(drv, 15).until(lambda d: d.find_element(By.ID, "done").is_displayed())
    finally:
        drv.quit()
    thread.join(10)
    assert not thread.is_alive()
    labels = result["labels"]
    assert labels[["a", "b", "p"]].values.tolist() == [[0, 1, 1.0], [5, 6, 0.0], [0, 2, 0.5]]
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert len(ledger) == 3 and {r.labeler for r in ledger.records()} == {"human"}
