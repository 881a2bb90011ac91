-- The dog registry. Ids come from an identity column: 1, 2, ... and never reused, as in memory.
CREATE TABLE dogs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    breed text NOT NULL CHECK (char_length(breed) BETWEEN 1 AND 64),
    age integer NOT NULL CHECK (age BETWEEN 0 AND 40)
);
