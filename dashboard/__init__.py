"""The Streamlit app: a router (app.py), thin views (views/), widgets and pure chart builders."""
