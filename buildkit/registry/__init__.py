"""Other registries: a client for the OCI distribution API, pulls of base
images and pushes of built images.

    auth.py         WWW-Authenticate challenges, Basic headers, token scopes (pure)
    credentials.py  credentials by registry host: docker's config.json, or given (pure)
    config.py       `RegistryConfig`: credentials, insecure hosts, retries (no httpx)
    session.py      `RegistrySession`: the httpx client, auth flow, retries, tokens
    content.py      what a registry sends back: manifests, digests, verified blob reads
    client.py       `RegistryClient`: manifest, blob and upload operations
    names.py        whether a tag names another registry
    pull.py         `pull_image`: a reference into the store, remembered under `bases/`
    push.py         `push_image`: blobs, manifests, the index, the tag last

Nothing here reads the environment or the user's home: the caller (the CLI,
a worker) says which config file to read and which hosts are insecure.
"""
