"""What OUTPUT holds between runs: manifest.json, the ingested-keys index, the lock and the publish journal."""
