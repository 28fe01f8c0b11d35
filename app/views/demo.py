"""Demo: the Gradio demo, served by this Streamlit process and embedded at its content's height.

``CSN_DEMO_URL`` points the page at a demo started elsewhere (``python -m app.demo``) instead.
"""
import html
import os
import urllib.error
import urllib.request

import streamlit as st

st.title("Demo: classify your own video")


def url_reachable(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """(True, "") when ``url`` answers an HTTP GET within ``timeout``; else (False, why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500, f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return e.code < 500, f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return False, str(getattr(e, "reason", e))


@st.cache_resource(show_spinner="Starting the demo (first visit only)…")
def embedded_demo() -> str:
    """Start the Gradio demo in this process once; its URL."""
    from app.demo import start_in_background

    return start_in_background()


def frame(url: str) -> str:
    """An iframe on ``url`` that takes the height the demo page posts (see app.demo.RESIZE_JS)."""
    src = html.escape(url, quote=True)
    return f"""<style>html, body {{ margin: 0; }}</style>
<iframe id="demo" src="{src}" title="CSN Explorer demo" allow="autoplay; fullscreen"
        style="width: 100%; height: 900px; border: 0; display: block;"></iframe>
<script>
const f = document.getElementById("demo");
addEventListener("message", (e) => {{
  if (e.source === f.contentWindow && e.data && e.data.csnDemoHeight > 0)
    f.style.height = e.data.csnDemoHeight + "px";
}});
</script>"""


external = (os.environ.get("CSN_DEMO_URL") or "").rstrip("/")
if external:
    url = external
    ok, why = url_reachable(url)
    if not ok:
        st.warning(f"The demo is not running at {url} ({why}), where CSN_DEMO_URL points.",
                   icon=":material/link_off:")
        st.markdown("Start it there (`python -m app.demo`), or unset CSN_DEMO_URL so that this "
                    "app serves the demo itself.")
        st.button("Check again", icon=":material/refresh:")
        st.stop()
else:
    try:
        url = embedded_demo()
    except Exception as e:  # a taken CSN_DEMO_PORT, a missing package: tell, do not crash
        st.error(f"Could not start the demo in this app: {e}", icon=":material/error:")
        st.caption("Set CSN_DEMO_PORT to a free port, or run `python -m app.demo` and point "
                   "CSN_DEMO_URL at it.")
        st.stop()
st.caption(f"The Gradio demo at {url} ([open in its own tab]({url})). New finished runs appear in "
           "its model list when the page loads or with ↻ Refresh.")
st.iframe(frame(url), height="content")
