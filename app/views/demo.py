"""Demo: the Gradio demo (``python -m app.demo``) embedded, or how to start it."""
import streamlit as st

from app.state import demo_url, url_reachable

st.title("Demo: classify your own video")
url = demo_url()
ok, why = url_reachable(url)
if ok:
    st.caption(f"The Gradio demo at {url} ([open in its own tab]({url})).")
    st.iframe(url, height=1100)
else:
    st.warning(f"The demo is not running at {url} ({why}).", icon=":material/link_off:")
    st.markdown("Start it in another terminal from the repository root (`make run` starts it "
                "with the app when the Procfile has a `demo:` line):")
    st.code("python -m app.demo", language="bash")
    st.caption("Set CSN_DEMO_URL if it listens elsewhere, then reload this page.")
    st.button("Check again", icon=":material/refresh:")
