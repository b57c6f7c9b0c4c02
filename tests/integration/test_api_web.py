"""The web page in headless Chromium (Playwright driving /usr/bin/chromium).

The API runs with uvicorn on a free 127.0.0.1 port; the test types the token, drops a file
on the drop zone, and checks the class, the probability bars, the heatmap opacity slider,
the jobs table and that no request leaves the server (no CDN). The screenshot is kept in
test-artifacts/web_page.png.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import httpx
import pytest
from api_support import (
    AUTH,
    REPO,
    TOKEN,
    finished_job,
    live_server,
    make_context,
    make_settings,
    phantom_png,
)

from plugin.api.app import create_app
from vocabulary.identity import CLASSES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
STUDY = "1.2.826.0.1.3680043.8.498.2001"
DONE_STUDY = "1.2.826.0.1.3680043.8.498.2002"

DROP_JS = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
  const zone = document.getElementById("dropzone");
  const init = {dataTransfer: dt, bubbles: true, cancelable: true};
  zone.dispatchEvent(new DragEvent("dragover", init));
  zone.dispatchEvent(new DragEvent("drop", init));
}"""


def test_web_page_predicts_a_dropped_file(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not installed (apt-get install chromium)")
    settings = make_settings(tmp_path, orthanc_public_url="http://127.0.0.1:8042")
    ctx = make_context(settings)
    failed = ctx.jobs.touch_study(STUDY)  # type: ignore[union-attr]
    ctx.jobs.fail(failed, "delivery failed 3 times: connection refused")  # type: ignore[union-attr]
    done = finished_job(ctx.jobs, DONE_STUDY, tmp_path / "results")  # type: ignore[arg-type]
    image = phantom_png(256)
    outside: list[str] = []

    with live_server(create_app(settings, ctx)) as url:
        expected = httpx.post(f"{url}/v1/predict", files={"file": ("a", image)}, headers=AUTH)
        assert expected.status_code == 200
        models = httpx.get(f"{url}/v1/models", headers=AUTH, timeout=120)  # MLflow set-up
        version = models.json()["in_use"]["version"]
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 1100})
                page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:" + url))
                        else outside.append(r.url))  # fmt: skip
                page.goto(url + "/")
                assert "RESEARCH USE ONLY" in page.inner_text("#banner")
                page.fill("#token", TOKEN)
                page.click("#save-token")
                page.wait_for_selector("#jobs tbody tr[data-job]", timeout=15_000)
                assert "failed" in page.inner_text("#jobs tbody")
                row = f"#jobs tbody tr[data-job='{done.id}']"
                assert page.inner_text(f"{row} td.decision").startswith("Finding: Glioma")
                page.wait_for_function(
                    f'(() => {{ const i = document.querySelector("{row} img.preview");'
                    " return i && i.complete && i.naturalWidth > 0; })()",
                    timeout=15_000,
                )
                link = page.get_attribute(f"{row} td.viewer a", "href")
                assert (
                    link == f"http://127.0.0.1:8042/ohif/viewer.html?StudyInstanceUIDs={DONE_STUDY}"
                )
                page.wait_for_selector("#model-in-use:not(:empty)", timeout=15_000)
                assert version in page.inner_text("#model-in-use")
                assert "BRAINXAI_API_TOKEN" in page.inner_text("#token-help")
                assert TOKEN not in page.inner_text("body")

                page.evaluate(DROP_JS, [base64.b64encode(image).decode(), "phantom.png"])
                page.wait_for_function(
                    "document.getElementById('result-class').textContent.length > 0",
                    timeout=30_000,
                )
                shown = page.inner_text("#result-class")
                body = expected.json()
                assert shown == (body["class"] or "indeterminate")
                assert page.inner_text("#result-sentence") == body["sentence"]
                assert page.locator("#probs .row").count() == len(CLASSES)
                heat = "#views .view[data-method=gradcam-gxi] img.heat"  # the default method
                assert page.locator(heat).count() == 1
                page.locator("#views input[type=range]").first.fill("20")
                opacity = page.eval_on_selector("#views img.heat", "e => e.style.opacity")
                assert opacity == "0.2"
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "web_page.png"), full_page=True)

                # No method ticked: the page asks without ``methods`` and the API's default
                # (Grad-CAM sharpened) is shown, not a default of the page's own.
                page.uncheck("#methods input[value=gradcam-gxi]")
                assert page.locator("#methods input:checked").count() == 0
                page.evaluate("document.getElementById('views').replaceChildren()")
                with page.expect_request(lambda r: "/v1/predict" in r.url) as asked:
                    page.evaluate(DROP_JS, [base64.b64encode(image).decode(), "phantom.png"])
                assert "methods=" not in asked.value.url
                page.wait_for_selector(heat, timeout=30_000)

                page.evaluate(DROP_JS, [base64.b64encode(b"not an image").decode(), "x.png"])
                page.wait_for_selector("#error:not([hidden])", timeout=15_000)
                assert "HTTP 415" in page.inner_text("#error")
            finally:
                browser.close()
    assert outside == []
    assert (ARTIFACTS / "web_page.png").stat().st_size > 10_000
