"""Everything computed about models and zoos. Reads what `data` hands it; never imports Streamlit."""
