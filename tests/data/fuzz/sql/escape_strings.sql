UPDATE profiles SET displayname = E'Eve\'s \\ Laptop\n2nd line', avatar_url = 'mxc://example.org/It''sPictureQq' WHERE full_user_id = '@eve:example.org'
