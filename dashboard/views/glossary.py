"""Glossary: every term the pages use (dashboard.glossary.TERMS), one anchored entry each so that a help
icon's link (/glossary#mc) scrolls to it, and the numbered sections of docs/science.md as "Science notes"
(/glossary#science-1)."""

import streamlit as st

from dashboard.glossary import SCIENCE, TERMS, science_sections

st.title("Glossary")
st.caption("What the dashboard's names mean. Every help icon (?) links here.")
for term in TERMS.values():
    st.subheader(term.name, anchor=term.anchor)
    st.markdown(term.text)

st.header("Science notes", anchor="science", divider=True)
st.caption("From docs/science.md: the taxonomy, the metrics' definitions and units, the published zoos.")
for section in science_sections(SCIENCE.read_text(encoding="utf-8")):
    st.subheader(f"{section.number}. {section.title}", anchor=section.anchor)
    st.markdown(section.text)
