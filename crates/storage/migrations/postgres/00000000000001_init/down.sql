DROP TABLE jobs;
DROP TABLE packages;
DROP TABLE apps;
DROP TABLE roles;
DROP TABLE spaces;
DROP TABLE organizations;
