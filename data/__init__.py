"""Zoo storage and generation: schema, specs, tasks, architectures, training, the zoo store.

Nothing here imports Streamlit or `analysis`: dependencies run dashboard → analysis → data.
"""
