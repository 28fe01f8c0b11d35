"""CSN Explorer (Streamlit). Run: ``streamlit run app/main.py``.

A multipage app: Builder (compose and count), Train (enqueue a run), Runs (table, run page,
compare) and Demo (the Gradio demo embedded).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="CSN Explorer", layout="wide")

from app.session import keep_form_state  # noqa: E402

keep_form_state(st.session_state)

VIEWS = ROOT / "app" / "views"
pages = {
    "Design": [st.Page(str(VIEWS / "builder.py"), title="Builder", icon=":material/architecture:",
                       default=True, url_path="builder")],
    "Experiments": [
        st.Page(str(VIEWS / "train.py"), title="Train", icon=":material/play_arrow:", url_path="train"),
        st.Page(str(VIEWS / "runs.py"), title="Runs", icon=":material/table:", url_path="runs"),
        st.Page(str(VIEWS / "run.py"), title="Run detail", icon=":material/monitoring:", url_path="run"),
        st.Page(str(VIEWS / "compare.py"), title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page(str(VIEWS / "study.py"), title="Study", icon=":material/science:", url_path="study"),
    ],
    "Try it": [st.Page(str(VIEWS / "demo.py"), title="Demo", icon=":material/movie:", url_path="demo")],
}
st.navigation(pages).run()
