"""What a person reads about a dataset: inspect's report, verify's checks, the output folder's README."""
