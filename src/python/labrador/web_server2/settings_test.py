import pytest
from pydantic import ValidationError

from labrador.web_server2.settings import Settings


def test_no_cache_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_SERVER2_REDIS_URL", raising=False)
    assert Settings().redis_url is None


def test_reads_the_cache_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SERVER2_REDIS_URL", "redis://cache:6379/3")
    monkeypatch.setenv("WEB_SERVER2_REDIS_PREFIX", "test-42:")
    monkeypatch.setenv("WEB_SERVER2_CARD_TTL", "0.5")
    settings = Settings()
    assert (settings.redis_url, settings.redis_prefix, settings.card_ttl) == (
        "redis://cache:6379/3",
        "test-42:",
        0.5,
    )


def test_an_empty_redis_url_means_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_SERVER2_REDIS_URL", "")
    assert Settings().redis_url is None


@pytest.mark.parametrize("url", ["redis://localhost", "rediss://cache:6380/1", "unix:///tmp/redis.sock"])
def test_accepts_redis_urls(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("url", ["http://cache:6379", "cache:6379", "localhost"])
def test_rejects_other_urls_and_says_what_is_expected(url: str) -> None:
    with pytest.raises(ValidationError, match="must be a redis://, rediss://, unix:// URL"):
        Settings(redis_url=url)


@pytest.mark.parametrize("field", ["card_ttl", "redis_timeout", "upstream_timeout"])
def test_rejects_non_positive_durations(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: 0})
