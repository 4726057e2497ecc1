"""The demo page in a real Chromium against the real API and function on loopback.

A person creates an account, makes an avatar and a pack, comes back after a reload, browses,
deletes and erases; errors are told in words; the keyboard alone gets through; the key never
appears in a URL, no image request carries a Referer, and the CSP refuses nothing the page does.
With SCREENSHOT_DIR set (`make screenshots`), the result view is saved there at 1280 and 360 px.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_testing import empty_database, stored_files
from browser_testing import Watch, launch
from playwright.sync_api import Browser, FileChooser, Page, Route, expect, sync_playwright
from process_testing import Stack, astronaut_jpeg, sample_jpeg, serving

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}
KEY_STORE = "animal-avatar.api-key"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The function and the API as processes, on a database of this module's own."""
    tmp = tmp_path_factory.mktemp("demo")
    with empty_database(tmp) as url, serving(url, tmp) as servers:
        yield servers


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    files = {
        "astronaut": ("astronaut.jpg", astronaut_jpeg()),
        "coffee": ("coffee.jpg", sample_jpeg("coffee")),  # a real photo without a face
        "text": ("notes.jpg", b"these are notes, not a photo\n" * 20),
    }
    for file_name, data in files.values():
        (folder / file_name).write_bytes(data)
    return {name: folder / file_name for name, (file_name, _) in files.items()}


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Browser, site: Stack, watch: Watch) -> Iterator[Page]:
    """A new browser profile (empty localStorage) on the demo page."""
    context = browser.new_context(viewport=DESKTOP, base_url=site.api_url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    watch.follow(page)
    open_page(page)
    yield page
    context.close()
    assert watch.errors == [], "the page logged errors (a CSP refusal would be one)"


def open_page(page: Page) -> None:
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "yes")


def api_user(site: Stack, username: str) -> str:
    """A user made through the API (not the page): its key."""
    email = f"{username}@example.com"
    answer = httpx.post(f"{site.api_url}/v1/users", json={"username": username, "email": email})
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["api_key"]
    return key


def sign_in(page: Page, key: str) -> None:
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#who")).to_be_visible()


def choose(page: Page, photo: Path, *animals: str) -> None:
    """The photo, and exactly these animals."""
    page.get_by_label("Your photo", exact=True).set_input_files(photo)
    for box in page.locator("#animals input").all():
        box.set_checked(box.get_attribute("value") in animals)


def make(page: Page) -> None:
    page.get_by_role("button", name="Make my avatar").click()


def confirm(page: Page, action: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=action).click()
    expect(dialog).to_be_hidden()


def shown_image(page: Page) -> dict[str, Any]:
    """The result image once loaded: its alt, natural size and the face boxes drawn over it."""
    image = page.locator("#result-image")
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.getElementById('result-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    info: dict[str, Any] = page.evaluate(
        """() => {
            const img = document.getElementById('result-image');
            return {alt: img.alt, width: img.naturalWidth, src: img.src,
                    boxes: document.querySelectorAll('#boxes rect').length};
        }"""
    )
    return info


def history_ids(page: Page) -> list[str]:
    return page.locator("#history > li").evaluate_all("items => items.map(i => i.dataset.id)")


def test_the_whole_flow_create_make_pack_reload_browse_delete_erase(
    page: Page, site: Stack, photos: dict[str, Path], watch: Watch
) -> None:
    # A new person creates an account; the key is shown once and kept by the browser.
    expect(page.get_by_role("heading", name="Turn your selfie into an animal")).to_be_visible()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Create account").click()
    shown_key = page.get_by_label("Your API key")
    expect(shown_key).to_have_value(re.compile("^aa_"))
    key = shown_key.input_value()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORE}')") == key
    page.get_by_role("button", name="I saved it, continue").click()
    expect(page.locator("#who")).to_have_text("ada")
    expect(page.get_by_label("Take a selfie")).to_be_hidden()  # no camera to hold: the picker
    empty_note = page.get_by_text("Nothing yet: your avatars will be listed here.")
    expect(empty_note).to_be_visible()

    # One animal, async: the progress is shown until the record is finished. The first poll is
    # answered as `processing` and the next one held, so the progress can be read while it shows.
    polled: list[str] = []
    held: list[Route] = []

    def poll(route: Route) -> None:
        if polled:
            held.append(route)  # released by the test, below
            return
        polled.append(route.request.url)
        answer = route.fetch()
        route.fulfill(response=answer, json=answer.json() | {"status": "processing"})

    page.route(re.compile(r".*/v1/generations/[0-9a-f-]{36}$"), poll)
    choose(page, photos["astronaut"], "fox")
    make(page)
    expect(page.locator("#progress-label")).to_have_text("Drawing your fox")
    expect(page.locator("#progress")).to_have_attribute("value", "60")
    for _ in range(100):  # the next poll arrives and is held
        if held:
            break
        page.wait_for_timeout(50)
    assert held
    expect(page.locator("#progress-label")).to_have_text("Drawing your fox")  # still up
    held[0].continue_()
    page.unroute_all()

    expect(page.get_by_role("heading", name="Your avatar", exact=True)).to_be_focused()
    expect(page.locator("#progress-box")).to_be_hidden()
    image = shown_image(page)
    assert image["alt"] == "Your photo as a fox"
    expect(empty_note).to_be_hidden()
    assert image["boxes"] == 1
    boxes = page.locator("#boxes")
    expect(boxes).to_be_visible()
    page.get_by_label("Show face boxes").uncheck()
    expect(boxes).to_be_hidden()
    page.get_by_label("Show face boxes").check()
    expect(boxes).to_be_visible()

    # A pack: three animals from one upload, each shown on demand.
    choose(page, photos["astronaut"], "fox", "panda", "koala")
    make(page)
    strip = page.get_by_role("group", name="Animals of this pack")
    expect(strip.get_by_role("button")).to_have_count(3)
    strip.get_by_role("button", name="Panda").click()
    expect(strip.get_by_role("button", name="Panda")).to_have_attribute("aria-pressed", "true")
    assert shown_image(page)["alt"] == "Your photo as a panda"
    expect(page.locator("#history > li")).to_have_count(4)
    strip.get_by_role("button", name="Fox").click()
    assert shown_image(page)["alt"] == "Your photo as a fox"
    take_screenshots(page)

    # Ten more through the API, then a reload: the key is remembered, the history is paged.
    auth = {"Authorization": f"Bearer {key}"}
    more = httpx.post(
        f"{site.api_url}/v1/packs",
        headers=auth,
        files={"image": ("a.jpg", photos["astronaut"].read_bytes(), "image/jpeg")},
        data={"animals": "all"},
        timeout=60,
    )
    assert more.status_code == 201, more.text

    # The newest is answered as still being made: it takes its place when finished.
    settled: list[str] = []

    def unfinished(route: Route) -> None:
        answer = route.fetch()
        listed = answer.json()
        listed["items"][0] |= {"status": "processing", "image_url": None, "completed_at": None}
        settled.append(listed["items"][0]["id"])
        route.fulfill(response=answer, json=listed)

    page.route(re.compile(r".*/v1/generations\?limit=\d+$"), unfinished, times=1)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "yes")
    expect(page.locator("#who")).to_have_text("ada")
    expect(page.locator("#history > li")).to_have_count(12)
    assert settled
    expect(page.locator("#history > li").first).to_have_attribute("data-status", "succeeded")
    assert any(f"/v1/generations/{settled[0]}" in url for url in watch.urls())  # followed
    expect(page.locator("#history > li[data-status=succeeded]")).to_have_count(12)
    page.get_by_role("button", name="Load more").click()
    expect(page.locator("#history > li")).to_have_count(14)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    listed = httpx.get(f"{site.api_url}/v1/generations?limit=100", headers=auth).json()["items"]
    assert history_ids(page) == [item["id"] for item in listed]  # newest first, no repeats
    assert {item["style"] for item in listed} == {"character"}  # the page's default

    # Delete the newest avatar.
    newest = page.locator("#history > li").first
    newest_id = newest.get_attribute("data-id")
    newest.get_by_role("button", name=re.compile("^Delete the ")).click()
    confirm(page, "Delete")
    expect(page.locator("#history > li")).to_have_count(13)
    assert newest_id not in history_ids(page)
    gone = httpx.get(f"{site.api_url}/v1/generations/{newest_id}", headers=auth)
    assert gone.status_code == 404

    # Erase the account, a selfie chosen and a result shown: everything goes, the browser
    # forgets the key.
    page.get_by_label("Your photo", exact=True).set_input_files(photos["astronaut"])
    page.locator("#history .thumb").first.click()
    shown_image(page)
    media = site.logs / "media"
    assert stored_files(media)
    page.get_by_role("button", name="Erase my account").click()
    confirm(page, "Erase everything")
    expect(page.get_by_role("status")).to_have_text("Your account and all your images were erased.")
    expect(page.get_by_role("heading", name="Turn your selfie into an animal")).to_be_visible()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORE}')") is None
    # Nothing of the person stays in the page: not the chosen selfie, not the last result.
    left = page.evaluate(
        """() => [document.getElementById('photo').files.length,
                  document.getElementById('preview').hasAttribute('src'),
                  document.getElementById('result-image').hasAttribute('src')]"""
    )
    assert left == [0, False, False]
    assert httpx.get(f"{site.api_url}/v1/users/me", headers=auth).status_code == 401
    assert [p for p in stored_files(media) if "avatars/" in p.as_posix()] == []

    # The key travelled only in headers; signed image links were fetched without a Referer.
    assert not [url for url in watch.urls() if key in url]
    images = [r for r in watch.requests if "/media/" in r.url]
    assert images
    assert [r.url for r in images if "referer" in r.all_headers()] == []  # as sent


def take_screenshots(page: Page) -> None:
    """The result view at 1280 and 360 px; the phone's has no sideways scroll."""
    folder = os.environ.get("SCREENSHOT_DIR")
    for name, size in (("demo-1280.jpg", DESKTOP), ("demo-360.jpg", PHONE)):
        page.set_viewport_size(size)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{size['width']} px: {overflow} px wider than the window"
        if folder:
            page.screenshot(path=Path(folder) / name, full_page=True, type="jpeg", quality=85)
    page.set_viewport_size(DESKTOP)


def test_errors_are_told_in_words_with_what_to_do(
    page: Page, site: Stack, photos: dict[str, Path]
) -> None:
    alert = page.get_by_role("alert")

    page.get_by_label("API key", exact=True).fill("aa_" + "x" * 43)
    page.get_by_role("button", name="Use this key").click()
    expect(alert).to_contain_text("This key isn't recognised.")
    expect(alert).to_contain_text("pasted the whole key")

    api_user(site, "grace")
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Email").fill("someone.else@example.com")
    page.get_by_role("button", name="Create account").click()
    expect(alert).to_contain_text("That username or email is already taken.")

    sign_in(page, api_user(site, "hopper"))
    expect(alert).to_be_hidden()
    choose(page, photos["coffee"], "cat")
    make(page)
    expect(alert).to_contain_text("We couldn't find a face in this photo.")
    expect(alert).to_contain_text("your face clearly visible")
    expect(page.locator("#error")).to_have_attribute("data-code", "no_face_detected")
    failed = page.locator("#history > li")
    expect(failed).to_have_count(1)
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("We couldn't find a face")

    choose(page, photos["text"], "cat")
    make(page)
    expect(alert).to_contain_text("This file isn't a photo we can read.")
    expect(alert).to_contain_text("JPEG, PNG, WebP or HEIC")
    page.get_by_role("button", name="Dismiss").click()
    expect(alert).to_be_hidden()

    # Over the rate limit (reached through the API): how long to wait, from Retry-After.
    key = api_user(site, "busy")
    upload = {"image": ("a.jpg", photos["astronaut"].read_bytes(), "image/jpeg")}
    for _ in range(4):
        answer = httpx.post(
            f"{site.api_url}/v1/packs",
            headers={"Authorization": f"Bearer {key}"},
            files=upload,
            data={"animals": "all"},
            timeout=60,
        )
        if answer.status_code == 429:
            break
        assert answer.status_code == 201, answer.text
    assert answer.status_code == 429
    page.get_by_role("button", name="Forget this key").click()
    confirm(page, "Forget the key")
    expect(page.get_by_role("status")).to_have_text("This browser forgot your key.")
    assert page.evaluate(f"localStorage.getItem('{KEY_STORE}')") is None
    sign_in(page, key)
    choose(page, photos["astronaut"], "cat")
    make(page)
    expect(alert).to_contain_text("You've made a lot of avatars in a short time.")
    expect(alert).to_contain_text(re.compile(r"Try again in (about )?\d+ (seconds|minutes)\."))
    expect(page.get_by_role("button", name="Make my avatar")).to_be_enabled()


def tab_to(page: Page, element_id: str) -> None:
    """Press Tab until the element has the focus."""
    for _ in range(60):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


def test_a_keyboard_alone_gets_through_on_a_phone(
    page: Page, site: Stack, photos: dict[str, Path]
) -> None:
    page.set_viewport_size(PHONE)
    # File choosers are intercepted from now on. (`expect_file_chooser` turns interception on
    # without waiting for it, so a key pressed at once could open a chooser nothing sees.)
    choosers: list[FileChooser] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    tab_to(page, "key")
    key = api_user(site, "keys")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_have_text("keys")

    tab_to(page, "photo")
    page.keyboard.press("Space")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(50)
    assert len(choosers) == 1
    choosers[0].set_files(photos["astronaut"])
    tab_to(page, "animal-cat")
    page.keyboard.press("Space")  # the first animal comes checked: uncheck it
    tab_to(page, "animal-dog")
    page.keyboard.press("Space")
    tab_to(page, "style-character")  # the style's radio group: its checked one takes the focus
    page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Face paint")).to_be_checked()
    tab_to(page, "submit")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your avatar", exact=True)).to_be_focused()
    assert shown_image(page)["alt"] == "Your photo as a dog"
    made = httpx.get(f"{site.api_url}/v1/generations", headers={"Authorization": f"Bearer {key}"})
    assert [(item["animal"], item["style"]) for item in made.json()["items"]] == [("dog", "paint")]

    # Every control has a name, every image an alt; nothing is wider than the phone.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, button, select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !e.textContent.trim())
            .map(e => e.id || e.outerHTML)"""
    )
    assert unnamed == []
    assert page.evaluate("[...document.images].filter(i => !i.hasAttribute('alt')).length") == 0
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0

    # Links that stopped working (as an expired one does) are read afresh, once: the history
    # is answered with a forged signature, which the real /media/ refuses.
    def forge(route: Route) -> None:
        answer = route.fetch()
        page_of = answer.json()
        for item in page_of["items"]:
            item["image_url"] = re.sub(r"signature=\w+", "signature=" + "0" * 64, item["image_url"])
        route.fulfill(response=answer, json=page_of)

    page.route(re.compile(r".*/v1/generations\?.*"), forge)
    page.reload()
    thumb = page.locator("#history .thumb img").first
    expect(thumb).to_have_attribute("data-retried", "yes")
    page.wait_for_function(
        "() => { const i = document.querySelector('#history .thumb img');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert "0" * 64 not in (thumb.get_attribute("src") or "")
    page.locator("#history .thumb").first.click()
    assert "0" * 64 not in shown_image(page)["src"]


def test_on_a_phone_a_selfie_comes_straight_from_the_front_camera(
    browser: Browser, site: Stack, photos: dict[str, Path]
) -> None:
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, base_url=site.api_url
    )
    try:
        page = context.new_page()
        open_page(page)
        sign_in(page, api_user(site, "selfie"))
        camera = page.get_by_label("Take a selfie")
        expect(camera).to_be_visible()
        expect(camera).to_have_attribute("capture", "user")
        expect(camera).to_have_attribute("accept", "image/*")
        camera.set_input_files(photos["astronaut"])
        expect(page.get_by_role("img", name="The photo you chose")).to_be_visible()
        make(page)
        assert shown_image(page)["alt"] == "Your photo as a cat"
    finally:
        context.close()


def test_the_policy_refuses_inline_script_and_outside_images(page: Page, watch: Watch) -> None:
    refused = page.evaluate(
        """async () => {
            const seen = [];
            document.addEventListener(
                'securitypolicyviolation', e => seen.push(e.effectiveDirective));
            const script = document.createElement('script');
            script.textContent = 'window.injected = true';
            document.body.append(script);
            const img = document.createElement('img');
            img.src = 'https://example.com/tracker.png';
            document.body.append(img);
            await new Promise(r => setTimeout(r, 300));
            return {seen, injected: window.injected === true};
        }"""
    )
    assert refused["injected"] is False
    assert sorted(refused["seen"]) == ["img-src", "script-src-elem"]
    assert len(watch.errors) == 2
    watch.errors.clear()  # the refusals this test asked for
