import pytest
from pydantic import ValidationError

from labrador.web_server1.settings import Settings


def test_defaults_keep_dogs_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_SERVER1_DATABASE_URL", raising=False)
    assert Settings().database_url is None


def test_reads_the_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SERVER1_DATABASE_URL", "postgresql://lab:pw@db:5432/dogs")
    monkeypatch.setenv("WEB_SERVER1_DATABASE_POOL_SIZE", "3")
    settings = Settings()
    assert settings.database_url == "postgresql://lab:pw@db:5432/dogs"
    assert settings.database_pool_size == 3


def test_an_empty_database_url_means_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SERVER1_DATABASE_URL", "")
    assert Settings().database_url is None


@pytest.mark.parametrize("url", ["postgres://db/dogs", "postgresql://u@/dogs?host=/tmp/pg&port=5432"])
def test_accepts_postgresql_urls(url: str) -> None:
    assert Settings(database_url=url).database_url == url


@pytest.mark.parametrize("url", ["mysql://db/dogs", "db:5432", "host=db dbname=dogs"])
def test_rejects_other_urls_and_says_what_is_expected(url: str) -> None:
    with pytest.raises(ValidationError, match="must be a postgresql://, postgres:// URL"):
        Settings(database_url=url)


@pytest.mark.parametrize(
    "field, value",
    [("database_pool_size", 0), ("database_pool_size", 101), ("database_timeout", 0), ("max_dogs", -1)],
)
def test_rejects_out_of_range_numbers(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})
