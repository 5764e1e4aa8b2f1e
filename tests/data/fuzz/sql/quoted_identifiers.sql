SELECT "user", "Order", "weird""name" FROM "user_directory" WHERE "user" = '@grace:example.org'
