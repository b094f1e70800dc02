/* Search excerpts from a page's article alone, and never from a fold.
   Sphinx cuts a result's excerpt from the text of the page's whole [role="main"] element. In the
   book theme that element also holds the article's toolbar (its colour menu reads "System
   Settings Light Dark"), the page's contents list and the previous/next links; and the folds
   (quiz answers, reference solutions), which the index leaves out, are still in its text, so an
   excerpt could show an answer. Loaded with "defer": it runs after searchtools.js, which the
   search page loads after the theme's scripts. */
(() => {
  const fromMain = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const page = new DOMParser().parseFromString(htmlString, "text/html");
    const main = page.querySelector('[role="main"]');
    const article = main && main.querySelector("article.bd-article");
    if (!article) return fromMain(htmlString, anchor);
    article.querySelectorAll(".no-search").forEach((fold) => fold.remove());
    main.replaceChildren(article);
    return fromMain(page.documentElement.outerHTML, anchor);
  };
})();
