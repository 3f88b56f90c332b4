from licusage import catalog, queries, sessions


def test_login_and_usage(engine):
    catalog.add_pool(engine, "Case Management", "Concurrent User", 1)
    result = sessions.login(engine, "alice", {"Case Management": "Concurrent User"})
    assert result.ok
    frame = queries.session_usage(engine)
    assert list(frame["user"]) == ["alice"]
