"""runs page (needs jobs/ and db/)."""
import streamlit as st

from app.state import jobs_api

st.title("Runs")
api, why = jobs_api()
if api is None:
    st.warning(f"This page needs the job queue: {why}.", icon=":material/warning:")
    st.stop()
