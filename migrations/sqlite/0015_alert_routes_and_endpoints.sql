-- Which on-call routes took each alert: a route that took it is not sent it again when another
-- route fails and the alert is retried.
CREATE TABLE alert_route_notices (
    alert_id  TEXT NOT NULL REFERENCES alerts (id),
    route     TEXT NOT NULL,
    sent_at   TEXT NOT NULL,
    PRIMARY KEY (alert_id, route)
);

-- A service's alerts, newest first (the operations page asks for a viewer's own in SQL).
CREATE INDEX alerts_by_service ON alerts (service, raised_at);
-- The last acknowledged alert of a kind about a subject (the quiet time before it is raised again).
CREATE INDEX alerts_by_subject ON alerts (kind, subject, acknowledged_at);

-- Each practice's endpoint: since when every attempt at it has failed (NULL: its last attempt
-- was answered). A failing endpoint is judged by this, not by how old one letter is.
CREATE TABLE endpoint_health (
    practice       TEXT PRIMARY KEY,
    failing_since  TEXT
);
