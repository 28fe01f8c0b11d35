"""CSN Explorer (Streamlit). Run: streamlit run app/main.py"""
import streamlit as st

from backend.csn import SpecError, count, list_presets, preset

st.set_page_config(page_title="CSN Explorer", layout="wide")
st.title("CSN Explorer")
name = st.selectbox("Preset", list_presets(), index=list_presets().index("ir-csn-50"))
try:
    t = count(preset(name)).totals
except SpecError as e:
    st.error(str(e))
else:
    c1, c2, c3 = st.columns(3)
    c1.metric("Params (M)", f"{t.params / 1e6:.1f}")
    c2.metric("FLOPs (G multiply-adds)", f"{t.flops / 1e9:.1f}")
    c3.metric("Interactions (G pairs)", f"{t.interactions / 1e9:.2f}")
