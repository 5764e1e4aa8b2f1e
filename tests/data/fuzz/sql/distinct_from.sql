SELECT displayname IS DISTINCT FROM 'Old Name Jack' FROM profiles WHERE full_user_id = '@jack:example.org'
