SELECT u.name FROM unnest(ARRAY['@hank:example.org', '@ivy:example.org']) AS l(name) JOIN users AS u ON u.name = l.name
